"""The FTP store of tests/tests/cwl_tes.rs: pyftpdlib on one loopback address, port 21.

TESK's filer (plain FTP) uploads the task's outputs here and cwl-tes (FTP over TLS, `AUTH TLS`
on the control connection) reads them back, both as the one user the test made up. The
password comes from the environment (FTP_STORE_PASSWORD), never the command line. The TLS
certificate is made here, self-signed, into the state directory (neither client verifies it,
as neither verifies FTP servers by default). Prints `ready` once listening; stops by itself
after --max-seconds.

Usage: ftp_store.py --address 127.0.0.N --root DIR --state DIR --user NAME [--max-seconds S]
"""

import argparse
import datetime
import os
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer


def self_signed(address, state):
    """A throwaway key and certificate for `address`, as one PEM file in `state`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .sign(key, hashes.SHA256())
    )
    path = os.path.join(state, "ftp-store.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    password = os.environ.pop("FTP_STORE_PASSWORD", "")
    if not password:
        sys.exit("ftp_store.py: FTP_STORE_PASSWORD is not set")
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, password, args.root, perm="elradfmwMT")

    class Handler(TLS_FTPHandler):
        """pyftpdlib refuses SIZE in ASCII mode (the size would differ after newline
        conversion); vsftpd and ProFTPD answer it, and cwl-tes asks SIZE to tell a file
        from a directory on a connection that listed in ASCII mode before. No conversion
        happens here, so the binary size is the answer."""

        def ftp_SIZE(self, path):
            mode, self._current_type = self._current_type, "i"
            try:
                return super().ftp_SIZE(path)
            finally:
                self._current_type = mode

    Handler.authorizer = authorizer
    Handler.certfile = self_signed(args.address, args.state)
    Handler.tls_control_required = False
    Handler.tls_data_required = False
    Handler.banner = "c4gh-e2e FTP store"
    server = FTPServer((args.address, 21), Handler)
    server.max_cons = 32
    timer = threading.Timer(args.max_seconds, server.close_all)
    timer.daemon = True
    timer.start()
    print("ready", flush=True)
    try:
        server.serve_forever(timeout=0.5, blocking=True, handle_exit=True)
    finally:
        timer.cancel()


if __name__ == "__main__":
    main()
