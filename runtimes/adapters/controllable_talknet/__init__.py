"""Controllable TalkNet text to speech: the adapter (``adapter.py``) and the shims NeMo 1.8.2 needs here (``shims.py``)."""
