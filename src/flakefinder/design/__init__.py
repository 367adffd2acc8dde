"""Heterostructure design geometry: place flakes, overlap areas, twist angles, GDSII export."""
