"""Virtual machines, their pins and changes (models arrive with the inventory issue)."""
