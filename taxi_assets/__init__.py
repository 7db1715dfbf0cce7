"""NYC TLC High-Volume FHV trips as a month-partitioned Delta Lake asset."""
