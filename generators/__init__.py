"""Generator plugins bundled with vidrefine, registered in the `vidrefine.generators` entry points.

vidrefine never imports this package by name; see generators/README.md for the plugin contract.
"""
