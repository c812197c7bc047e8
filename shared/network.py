"""Whether a download host answers, asked before a download is attempted, so an offline run fails or skips at once."""

import socket


def reachable(host, port=443, timeout=3.0):
    """Returns:
    bool: a TCP connection to `host:port` opens within `timeout` seconds.
    """
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
