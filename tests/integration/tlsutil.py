"""A small test CA for TLS tests, made with the openssl command line.

    ca = TestCA(tmp_path, "spate test CA")
    cert, key = ca.server("srv")            # for 127.0.0.1 and localhost
    cert, key = ca.client("ci", "CN=ci,O=spate-tests")

Keys are P-256 (fast to make); certificates last two days.
"""

import pathlib
import subprocess


def _run(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr.strip()}")


def _subj(rfc2253):
    """'CN=ci,O=spate-tests' (RFC 2253: most specific first) as openssl's
    -subj wants it: '/O=spate-tests/CN=ci'."""
    return "/" + "/".join(reversed(rfc2253.split(",")))


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, folder, name="spate test CA"):
        self.dir = pathlib.Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        slug = name.replace(" ", "-")
        self.cert = self.dir / f"{slug}.pem"
        self.key = self.dir / f"{slug}.key"
        self.serial = 1
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", f"/CN={name}", "-days", "2", "-keyout", str(self.key), "-out", str(self.cert),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _issue(self, stem, subject, extensions):
        key, csr = self.dir / f"{stem}.key", self.dir / f"{stem}.csr"
        cert, ext = self.dir / f"{stem}.pem", self.dir / f"{stem}.ext"
        _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", _subj(subject), "-keyout", str(key), "-out", str(csr))
        ext.write_text(extensions)
        self.serial += 1
        _run("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
             "-set_serial", str(self.serial), "-days", "2", "-extfile", str(ext),
             "-out", str(cert))
        return cert, key

    def server(self, stem, cn="spated"):
        """A server certificate for 127.0.0.1 and localhost: (cert, key)."""
        return self._issue(stem, f"CN={cn}",
                           "basicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature\n"
                           "extendedKeyUsage=serverAuth\n"
                           "subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def client(self, stem, subject):
        """A client certificate with subject (RFC 2253 form): (cert, key)."""
        return self._issue(stem, subject,
                           "basicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature\n"
                           "extendedKeyUsage=clientAuth\n")
