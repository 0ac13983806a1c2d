"""The product layer: the command line, the demo, equal-budget comparisons, run files and the
calibrate command. It sits on top of the core and is the only part of blacksat that knows the
names of the built-in devices (see DESIGN.md, "Layout")."""
