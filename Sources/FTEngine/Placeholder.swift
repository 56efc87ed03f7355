import FTWire
