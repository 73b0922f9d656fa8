"""The `sign` step's script as the template renders it, run on this machine with a key the test
makes and an RPM it builds (rpmbuild, rpmsign and gpg from `make setup`), in directories standing
in for the pod's volumes, as an engine lays them out (the uploads volume holds the RPM as a file
named by its sha256): `rpm -K` with the public key imported says the signature is good, the
signed RPM differs from its input only by the signature header, and neither the log nor the
output holds anything of the secret key. The engine path (the local engine mounting the key
Secret) is not here yet: see the README."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from omni_sdk import Job
from omni_sdk.testing import Harness
from sign import Sign

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
SPEC = """Name: hello
Version: 1.0
Release: 1
Summary: A package to sign
License: MIT
BuildArch: noarch
%description
A package to sign.
%install
mkdir -p %{buildroot}/usr/share/hello
echo hello > %{buildroot}/usr/share/hello/hello.txt
%files
/usr/share/hello/hello.txt
"""


def run(*args, **kwargs):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


def query(rpm, fmt, dbpath=None):
    db = ["--dbpath", str(dbpath)] if dbpath else []
    return run("rpm", *db, "-qp", "--qf", fmt, str(rpm)).stdout


@pytest.fixture
def tools():
    for tool in ("rpmbuild", "rpmsign", "gpg", "gpg-agent"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `make setup`")


def test_the_step_signs_an_uploaded_rpm_with_the_key_and_nothing_else_changes(tmp_path, tools):
    # The RPM, built here.
    top = tmp_path / "rpmbuild"
    (top / "SPECS").mkdir(parents=True)
    (top / "SPECS/hello.spec").write_text(SPEC)
    run("rpmbuild", "-bb", "--define", f"_topdir {top}", str(top / "SPECS/hello.spec"))
    [built] = (top / "RPMS/noarch").glob("*.rpm")
    sha = hashlib.sha256(built.read_bytes()).hexdigest()

    # The operator's key, made here: the Secret's key.asc.
    home = tmp_path / "operator-gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--passphrase", ""]
    run(*gpg, "--quick-gen-key", "Omni Signing Test <signing@omni.invalid>", "rsa2048", "sign", "never")
    secret = run(*gpg, "--armor", "--export-secret-keys").stdout
    public = run(*gpg, "--armor", "--export").stdout
    run("gpgconf", "--homedir", str(home), "--kill", "all")

    # The pod's volumes, as an engine fills them.
    volumes = {name: tmp_path / name for name in ("input", "work", "output", "uploads", "key")}
    for path in volumes.values():
        path.mkdir()
    shutil.copy(built, volumes["uploads"] / sha)
    (volumes["key"] / "key.asc").write_text(secret)
    name = "hello-1.0-1.noarch.rpm"
    answer = Harness(Sign, TEMPLATES / "sign").serialize(Job.example(), {"rpms": {name: {"upload": sha}}})
    config_map = answer["manifests"][0]["body"]
    for key, text in config_map["data"].items():
        (volumes["input"] / key).write_text(text)
    container = answer["manifests"][1]["body"]["spec"]["template"]["spec"]["containers"][0]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for var in container["env"]:
        # The mount paths, as the engine points them at the volumes' directories.
        env[var["name"]] = str(volumes[Path(var["value"]).name])
    step = subprocess.run(container["command"], env=env, capture_output=True, text=True)
    log = step.stdout + step.stderr
    assert step.returncode == 0, log

    signed = volumes["output"] / name
    assert sorted(p.name for p in volumes["output"].iterdir()) == [name]
    fingerprint = run(*gpg, "--with-colons", "--list-keys").stdout.split("fpr:::::::::")[1].split(":")[0]
    assert log.splitlines() == [f"signing with key {fingerprint}", f"signed {name}"], log

    # Good with the public key imported, and not before.
    db = tmp_path / "rpmdb"
    db.mkdir()
    unchecked = subprocess.run(["rpm", "--dbpath", str(db), "-K", str(signed)], capture_output=True, text=True)
    assert "NOKEY" in unchecked.stdout + unchecked.stderr or unchecked.returncode != 0
    (tmp_path / "public.asc").write_text(public)
    run("rpm", "--dbpath", str(db), "--import", str(tmp_path / "public.asc"))
    checked = run("rpm", "--dbpath", str(db), "-K", str(signed)).stdout
    assert checked.strip().endswith("digests signatures OK"), checked
    assert query(built, "%{RSAHEADER:pgpsig}") == "(none)"
    assert fingerprint[-16:].lower() in query(signed, "%{RSAHEADER:pgpsig}").lower()

    # Only the signature header changed: the header proper and the payload are the input's.
    assert signed.read_bytes() != built.read_bytes()
    for tag in ("%{SHA256HEADER}", "%{PAYLOADDIGEST}", "%{NEVRA}", "[%{FILEDIGESTS}\n]"):
        assert query(signed, tag) == query(built, tag), tag

    # Nothing of the secret key in the log or the output.
    key_lines = [line for line in secret.splitlines() if len(line) > 40]
    assert key_lines and not any(line in log for line in key_lines)
    assert "signing@omni.invalid" not in log
    assert not any(line.encode() in signed.read_bytes() for line in key_lines)
    # Nor in the work volume, which outlives the step: the keyring went with it.
    assert not (volumes["work"] / "gnupg").exists()
