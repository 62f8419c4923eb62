"""The profile layer shared by ebpf-symbolize and ebpf-upload: the Profile model (model.py),
the folded text codec with its window headers (folded.py) and the grouping of Profiles into
aligned windows (windows.py).

It sits below both commands: it imports only recording.errors, and neither symbolizer/ nor
uploader/ keeps a copy of what is here. Nothing is imported at package level.
"""
