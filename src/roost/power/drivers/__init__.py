"""The power drivers that ship with Roost, one module each, loaded through entry points."""
