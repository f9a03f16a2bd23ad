"""Runtime environments: env vars, a working directory, and a package installed from a wheel.

Run with: python examples/runtime_env.py
"""

import base64
import hashlib
import os
import tempfile
import zipfile

import skate as ray  # Skate speaks Ray's API


def make_wheel(directory: str) -> str:
    """A tiny pure-Python wheel, so the example needs no network."""
    name, dist = "example_greeting", "example_greeting-1.0.dist-info"
    files = {
        f"{name}/__init__.py": "def greet(who):\n    return f'hello, {who}'\n",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: example-greeting\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(text.encode())}"
        for path, text in files.items()
    ]
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    path = os.path.join(directory, "example_greeting-1.0-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as zf:
        for name_, text in files.items():
            zf.writestr(name_, text)
    return path


@ray.remote
def settings():
    import config_module  # shipped with the working_dir

    with open("data/message.txt") as f:
        return os.environ["MODE"], config_module.LEVEL, f.read()


@ray.remote
def greet(who):
    import example_greeting  # installed by pip on the node, not in the driver's environment

    return example_greeting.greet(who)


@ray.remote
class Counter:
    def mode(self):
        return os.environ.get("MODE"), ray.get_runtime_context().runtime_env["env_vars"]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        project = os.path.join(tmp, "project")
        os.makedirs(os.path.join(project, "data"))
        with open(os.path.join(project, "config_module.py"), "w") as f:
            f.write("LEVEL = 3\n")
        with open(os.path.join(project, "data", "message.txt"), "w") as f:
            f.write("shipped with the job")
        with open(os.path.join(project, "big.ckpt"), "w") as f:
            f.write("left out by excludes")

        # The job's env: every task and actor of this driver runs in it.
        ray.init(
            num_cpus=2,
            runtime_env={"working_dir": project, "excludes": ["*.ckpt"], "env_vars": {"MODE": "job"}},
        )
        print(ray.get(settings.remote()))
        # A task's own env_vars merge over the job's.
        print(ray.get(settings.options(runtime_env={"env_vars": {"MODE": "task"}}).remote()))
        # pip from a local wheel: installed once per node, cached for the next tasks.
        wheel = make_wheel(tmp)
        print(ray.get(greet.options(runtime_env={"pip": [wheel]}).remote("world"), timeout=300))
        counter = Counter.options(runtime_env={"env_vars": {"MODE": "actor"}}).remote()
        print(ray.get(counter.mode.remote()))
        ray.shutdown()


if __name__ == "__main__":
    main()
