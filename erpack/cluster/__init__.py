"""Running erpack's stages on a Ray cluster (the `scale` extra): connecting (session), distributed
encode (encode). Named `cluster`, not `ray`, so `import ray` inside it is Ray itself."""
