"""Clathrin traces of coated pits -> auxilin recruitment.

Public entry points: :func:`read_processed_tracks` (cmeAnalysis ``ProcessedTracks.mat``)
and :func:`track_movie` (two-channel TIRF TIFF), both returning a tracks table with one
row per track and cmeAnalysis column names.
"""

from molecular_partner.matfile import read_processed_tracks
from molecular_partner.tracking import track_movie

__all__ = ["read_processed_tracks", "track_movie"]
