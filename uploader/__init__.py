"""`ebpf-upload`: send folded profiles to Pyroscope's `/ingest`, once or continuously.

Pipeline: folded.py reads text (with the symbolizer's window headers) into Blocks;
windows.py groups them into aligned upload windows; limits.py and names.py enforce the
server's rules; client.py speaks `/ingest`; delivery.py retries and falls back to spool.py;
replay.py and continuous.py drive it; cli.py is the thin command.
"""
