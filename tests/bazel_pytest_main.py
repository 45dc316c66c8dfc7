"""Entry point of the `bazel test` targets: runs pytest on the files given as arguments.

Bazel starts tests inside the runfiles tree, where the repository's root is the working
directory and on sys.path; pytest's own cache would write into the read-only tree, so it is off.
"""

import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
