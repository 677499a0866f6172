"""Clathrin traces of coated pits -> auxilin recruitment."""
