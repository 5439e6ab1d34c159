"""Chest CT position markers: lung apex, carina and upper diaphragm slice classifiers."""
