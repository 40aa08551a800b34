"""medreg: deep medical image registration.

Heavy libraries (torch, monai, nibabel, antspyx) are imported by the modules that
need them, never here, so that ``medreg --help`` stays instant.
"""

__version__ = "0.1.0"
