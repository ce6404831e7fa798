"""The keys of the stream reads, found on the client, for a Redis Cluster client.

redis-py finds a command's hash slot from its keys; for commands whose keys move (XREAD and
XREADGROUP name theirs after STREAMS) it asks a server with COMMAND GETKEYS, one round trip to
the default node before every such read, pipelined or not. Workers read their cameras' streams
with those two commands many times a second, so on a 3-master cluster with 200 cameras the default
node answered ~720 COMMAND GETKEYS a second, more than every other command on it together
(bench/many_cameras_hosts). `LocalStreamKeys` reads those keys from the arguments themselves and
leaves every other command to redis-py's parser.
"""

from __future__ import annotations

_OPTIONS_WITH_VALUE = {"COUNT", "BLOCK"}
_FLAGS = {"NOACK"}


def _text(arg) -> str:
    return arg.decode() if isinstance(arg, bytes | bytearray) else str(arg)


def stream_read_keys(args: tuple) -> list | None:
    """The keys of an XREAD or XREADGROUP command given as its arguments (the name first); None for
    any other command or one whose arguments do not parse (left to Redis to refuse)."""
    if not args:
        return None
    name = _text(args[0]).upper()
    if name == "XREAD":
        at = 1
    elif name == "XREADGROUP":
        if len(args) < 4 or _text(args[1]).upper() != "GROUP":
            return None
        at = 4  # GROUP <group> <consumer>
    else:
        return None
    while at < len(args):
        option = _text(args[at]).upper()
        if option == "STREAMS":
            rest = args[at + 1:]
            if not rest or len(rest) % 2:
                return None
            return list(rest[:len(rest) // 2])
        if option in _OPTIONS_WITH_VALUE:
            at += 2
        elif option in _FLAGS:
            at += 1
        else:
            return None
    return None


class LocalStreamKeys:
    """A cluster client's commands parser that knows the stream reads' keys itself (see the module
    docstring); everything else is the wrapped redis-py parser's."""

    def __init__(self, parser):
        self._parser = parser

    def get_keys(self, redis_conn, *args):
        keys = stream_read_keys(args)
        return keys if keys is not None else self._parser.get_keys(redis_conn, *args)

    def __getattr__(self, name):
        return getattr(self._parser, name)


def install(client) -> None:
    """Make `client` (a RedisCluster) and the pipelines it makes from now on find stream reads' keys locally."""
    if not isinstance(client.commands_parser, LocalStreamKeys):
        client.commands_parser = LocalStreamKeys(client.commands_parser)
