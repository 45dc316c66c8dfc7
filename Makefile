# The two commands of the README, plus the set-up both use.
.PHONY: setup demo test build-files

setup:
	bash scripts/setup.sh

demo:
	bash scripts/setup.sh --no-bazel
	bash scripts/main_job.sh

test: setup
	bash scripts/run_tests.sh

build-files:
	.venv/bin/python scripts/gen_build_files.py
