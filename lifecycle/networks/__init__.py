"""Networks: the builders a model definition names by import path, and their serving functions.

builders (import paths, aliases, build and serve), deeplab (DeepLab-v3), voc (the VOC classes
and palette, numpy only), classifier (the small image classifier of ``configs/shapes.yaml``).
"""
