"""`ebpf-upload`: send folded profiles to Pyroscope's `/ingest`, once or continuously.

Pipeline: text is read with profiles/folded.py (the symbolizer's window headers) and a
recording with the symbolizer's library (recording_input.py), both into Profiles;
source.py gives plain text its window; profiles/windows.py groups Profiles into aligned upload
windows; limits.py (on frames) and names.py enforce the server's rules, prepare.py encodes
the bodies; client.py speaks `/ingest`; delivery.py retries and falls back to spool.py;
replay.py and continuous.py drive it; cli.py is the thin command.
"""
