"""erpack on a Ray cluster: distributed encode (encode.py) and scoring (score.py), one session helper."""
