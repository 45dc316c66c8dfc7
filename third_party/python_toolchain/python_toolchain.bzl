"""A repository rule that registers the project's venv interpreter as Bazel's Python toolchain.

Bazel 4 ignores `--python_path` once toolchains are resolved, and `py_runtime` needs an
absolute interpreter path. Rather than committing a machine path, this rule computes it when
Bazel fetches the repository: `<workspace root>/.venv/bin/python3`, created by
`scripts/setup.sh`. Override with the environment variable TF_DEPTHSEG_PYTHON.
"""

def _local_python_impl(repository_ctx):
    workspace_root = repository_ctx.path(Label("//:WORKSPACE")).dirname
    interpreter = repository_ctx.os.environ.get("TF_DEPTHSEG_PYTHON", "")
    if not interpreter:
        interpreter = str(workspace_root) + "/.venv/bin/python3"
    if not repository_ctx.path(interpreter).exists:
        fail(("Python interpreter %s not found. Run `bash scripts/setup.sh` (creates .venv/) " +
              "or set TF_DEPTHSEG_PYTHON to a Python 3.11 with the requirements installed.") %
             interpreter)
    repository_ctx.file("BUILD.bazel", """
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "venv_py3",
    interpreter_path = "{interpreter}",
    python_version = "PY3",
    visibility = ["//visibility:public"],
)

py_runtime_pair(
    name = "venv_pair",
    py3_runtime = ":venv_py3",
)

toolchain(
    name = "toolchain",
    toolchain = ":venv_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
""".format(interpreter = interpreter))

local_python = repository_rule(
    implementation = _local_python_impl,
    environ = ["TF_DEPTHSEG_PYTHON"],
    local = True,
)
