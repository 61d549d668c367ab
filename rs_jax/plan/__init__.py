"""Planning runs ahead of time: compile for TPU slices, model FLOPs."""
