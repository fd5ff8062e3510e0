import subprocess


def test_the_system_package_runs():
    out = subprocess.run(["hello", "--greeting=ready"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ready"
