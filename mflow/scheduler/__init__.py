"""Recurring jobs (SPEC §5): when slots are (timing), what is due (firing), who fires
(the daemon and its leader election).
"""
