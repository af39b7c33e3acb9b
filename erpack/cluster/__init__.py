"""Running erpack's stages on a Ray cluster (the `scale` extra): connecting (session), distributed
encode (encode) and scoring (score). Named `cluster`, not `ray`, so `import ray` inside it is Ray itself."""
