"""The names of the inference paths `erpack bench` times, in the order it reports them (no torch here:
the CLI lists them in its help without loading the benchmark)."""

PATHS = ("full-torch", "full-onnx-int8", "erpack-torch", "erpack-onnx-fp32", "erpack-onnx-int8", "erpack-pruned-int8",
         "erpack-exit-int8",
         "erpack-ode-int8")
