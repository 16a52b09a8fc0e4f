# The two commands users need (both set everything up on first use, idempotently):
#   make demo   -- run the perception pipeline on its embedded default and print what it did
#   make test   -- the test suite (unit + ros tiers); CI runs exactly this
.PHONY: setup demo test test-gpu test-slow lint

setup:
	@bash tools/bootstrap.sh

demo: setup
	@bash -c 'source env.sh && spatial-ttt demo'

test: setup
	@bash tools/run_tests.sh

# On a GPU machine (CUDA + Triton): the gpu tier; ARGS=--without-triton runs it on the PyTorch kernels.
test-gpu: setup
	@bash tools/run_tests.sh -m gpu $(ARGS)

test-slow: setup
	@bash tools/run_tests.sh -m slow

lint: setup
	@bash -c 'source env.sh && ruff check .'
