"""The kernel launcher's message proxy (scripts/kernel.py, `Proxy`) between a Jupyter client and
a stand-in kernel made of plain zmq sockets: every channel passes frames through unchanged,
fastdet's marked stream lines become signed display_data / update_display_data messages of the
cell that printed them, and a malformed one is dropped with a log line and never reaches the
client. No evcxr, no Rust: seconds.
"""
import json
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from jupyter_client.session import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import kernel as launcher  # noqa: E402

KEY = b"a-secret-key"
DELIM = b"<IDS|MSG>"


def conn_info():
    ports = launcher.free_ports(5)
    c = {"transport": "tcp", "ip": "127.0.0.1", "key": KEY.decode(), "signature_scheme": "hmac-sha256"}
    c.update({f"{ch}_port": p for ch, p in zip(launcher.Proxy.CHANNELS, ports)})
    return c


def recv(sock, timeout=5.0):
    assert sock.poll(int(timeout * 1000)), "nothing arrived"
    return sock.recv_multipart()


@pytest.fixture
def rig():
    """(client sockets, kernel sockets, proxy, session) wired through a running proxy."""
    front, inner = conn_info(), conn_info()
    ctx = zmq.Context()
    url = lambda c, ch: f"tcp://127.0.0.1:{c[ch + '_port']}"
    kern = {}
    for ch, t in (("shell", zmq.ROUTER), ("control", zmq.ROUTER), ("stdin", zmq.ROUTER), ("iopub", zmq.PUB), ("hb", zmq.REP)):
        kern[ch] = ctx.socket(t)
        kern[ch].bind(url(inner, ch))
    proxy = launcher.Proxy(front, inner)
    thread = threading.Thread(target=proxy.run, daemon=True)
    thread.start()
    cli = {}
    for ch, t in (("shell", zmq.DEALER), ("control", zmq.DEALER), ("stdin", zmq.DEALER), ("iopub", zmq.SUB), ("hb", zmq.REQ)):
        cli[ch] = ctx.socket(t)
        if t == zmq.DEALER:
            cli[ch].setsockopt(zmq.IDENTITY, b"client-1")
        if t == zmq.SUB:
            cli[ch].setsockopt(zmq.SUBSCRIBE, b"")
        cli[ch].connect(url(front, ch))
    session = Session(key=KEY, signature_scheme="hmac-sha256", username="test")
    # PUB/SUB joins late: publish until the client hears one message.
    hello = [b"status", DELIM] + session.serialize(session.msg("status", {"execution_state": "idle"}))[1:]
    for _ in range(100):
        kern["iopub"].send_multipart(hello)
        if cli["iopub"].poll(50):
            break
    while cli["iopub"].poll(400):  # the proxy holds an idle until iopub is quiet (0.1 s)
        cli["iopub"].recv_multipart()
    yield cli, kern, proxy, session
    proxy.stopping.set()
    thread.join(timeout=2)
    proxy.close()
    for s in list(cli.values()) + list(kern.values()):
        s.close(linger=0)
    ctx.term()


def signed(session, frames):
    """The message in `frames` (after the delimiter), its signature checked."""
    i = frames.index(DELIM)
    return session.deserialize(frames[i + 1:], content=True)


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_requests_and_replies_pass_unchanged(rig, channel):
    cli, kern, _, session = rig
    req = session.msg("execute_request" if channel == "shell" else "interrupt_request", {"code": "1 + 1"})
    sent = session.serialize(req)
    cli[channel].send_multipart(sent)
    got = recv(kern[channel])
    # The kernel sees the client's frames behind the proxy's routing identity (and the client's).
    assert got[-len(sent):] == sent and b"client-1" in got[:-len(sent)], got[:3]
    reply = session.msg("execute_reply", {"status": "ok"}, parent=req["header"])
    kern[channel].send_multipart(got[:-len(sent)] + session.serialize(reply))
    back = recv(cli[channel])
    assert back == session.serialize(reply)
    assert signed(session, back)["parent_header"]["msg_id"] == req["header"]["msg_id"]


def test_stdin_reaches_the_client_that_asked(rig):
    cli, kern, _, session = rig
    req = session.serialize(session.msg("execute_request", {"code": "read"}))
    cli["shell"].send_multipart(req)
    idents = recv(kern["shell"])[:-len(req)]
    ask = session.serialize(session.msg("input_request", {"prompt": "?"}))
    kern["stdin"].send_multipart(idents + ask)  # as evcxr does: the execute request's identities
    assert recv(cli["stdin"]) == ask
    answer = session.serialize(session.msg("input_reply", {"value": "42"}))
    cli["stdin"].send_multipart(answer)
    assert recv(kern["stdin"])[-len(answer):] == answer


def test_heartbeat_and_iopub_pass_unchanged(rig):
    cli, kern, _, session = rig
    cli["hb"].send(b"ping-123")
    assert recv(kern["hb"]) == [b"ping-123"]
    kern["hb"].send(b"ping-123")
    assert recv(cli["hb"]) == [b"ping-123"]
    stream = [b"stream", DELIM] + session.serialize(session.msg("stream", {"name": "stdout", "text": "hello\n"}))[1:]
    kern["iopub"].send_multipart(stream)
    assert recv(cli["iopub"]) == stream


def marked(payload):
    return launcher.DISPLAY_MARK.decode() + (payload if isinstance(payload, str) else json.dumps(payload)) + "\n"


def test_marked_lines_become_signed_display_messages_of_the_running_cell(rig):
    cli, kern, _, session = rig
    cell = session.msg("execute_request", {"code": "learn.fit(...)"})
    for update in (False, True):
        line = marked({"id": "fastdet-7", "update": update, "data": {"text/html": "<b>epoch 1</b>", "text/plain": "epoch 1"}})
        msg = session.msg("stream", {"name": "stdout", "text": line}, parent=cell["header"])
        kern["iopub"].send_multipart([b"stream", DELIM] + session.serialize(msg)[1:])
        got = signed(session, recv(cli["iopub"]))  # raises if the signature does not verify
        assert got["header"]["msg_type"] == ("update_display_data" if update else "display_data")
        assert got["parent_header"]["msg_id"] == cell["header"]["msg_id"]
        assert got["content"]["transient"] == {"display_id": "fastdet-7"}
        assert got["content"]["data"] == {"text/html": "<b>epoch 1</b>", "text/plain": "epoch 1"}


def test_plain_lines_around_a_marked_one_keep_their_order(rig):
    cli, kern, _, session = rig
    text = "before\n" + marked({"id": "d", "data": {"text/plain": "x"}}) + "after\n"
    msg = session.msg("stream", {"name": "stdout", "text": text})
    kern["iopub"].send_multipart([b"stream", DELIM] + session.serialize(msg)[1:])
    got = [signed(session, recv(cli["iopub"])) for _ in range(3)]
    assert [g["header"]["msg_type"] for g in got] == ["stream", "display_data", "stream"]
    assert got[0]["content"]["text"] == "before\n" and got[2]["content"]["text"] == "after\n"


@pytest.mark.parametrize("bad", [
    "{not json",
    {"id": "d"},  # no data
    {"id": "", "data": {"text/plain": "x"}},
    {"id": "d", "data": {"image/png": 5}},
    {"id": "d", "update": "yes", "data": {"text/plain": "x"}},
    [1, 2],
])
def test_a_malformed_display_message_is_dropped_with_a_log_line(rig, capsys, bad):
    cli, kern, proxy, session = rig
    msg = session.msg("stream", {"name": "stdout", "text": marked(bad)})
    kern["iopub"].send_multipart([b"stream", DELIM] + session.serialize(msg)[1:])
    good = [b"stream", DELIM] + session.serialize(session.msg("stream", {"name": "stdout", "text": "next\n"}))[1:]
    kern["iopub"].send_multipart(good)
    assert recv(cli["iopub"]) == good, "the malformed line reached the client"
    assert proxy.dropped == 1
    assert "dropped a malformed display message" in capsys.readouterr().err


def test_a_cells_last_lines_arrive_before_its_idle(rig):
    """evcxr may send a cell's idle before its last printed lines (a fit's final report) on a
    loaded machine: the proxy holds the idle until iopub is quiet, so they arrive first, and an
    idle followed by the next cell's busy keeps its order."""
    cli, kern, _, session = rig
    cell = session.msg("execute_request", {"code": "learn.fit(..)"})
    idle = [b"status", DELIM] + session.serialize(session.msg("status", {"execution_state": "idle"}, parent=cell["header"]))[1:]
    late = json.dumps({"id": "fastdet-9", "update": True, "data": {"text/plain": "the report"}})
    line = [b"stream", DELIM] + session.serialize(
        session.msg("stream", {"name": "stdout", "text": f"FASTDET_DISPLAY_V1 {late}\n"}, parent=cell["header"]))[1:]
    kern["iopub"].send_multipart(idle)
    time.sleep(0.02)
    kern["iopub"].send_multipart(line)
    first, second = signed(session, recv(cli["iopub"])), signed(session, recv(cli["iopub"]))
    assert first["header"]["msg_type"] == "update_display_data", first["header"]
    assert second["header"]["msg_type"] == "status" and second["content"]["execution_state"] == "idle"
    busy = [b"status", DELIM] + session.serialize(session.msg("status", {"execution_state": "busy"}))[1:]
    idle = [b"status", DELIM] + session.serialize(session.msg("status", {"execution_state": "idle"}, parent=cell["header"]))[1:]
    kern["iopub"].send_multipart(idle)
    kern["iopub"].send_multipart(busy)
    states = [signed(session, recv(cli["iopub"]))["content"]["execution_state"] for _ in range(2)]
    assert states == ["idle", "busy"]


def test_inner_ports_avoid_jupyters_ports():
    """The launcher picks evcxr's ports before the proxy binds Jupyter's, which Jupyter has
    released: a port of Jupyter's handed out again made evcxr fail with 'Address already in use'."""
    taken = set(launcher.free_ports(40))
    ports = launcher.free_ports(5, avoid=taken)
    assert len(set(ports)) == 5 and not taken & set(ports)


def test_a_slot_sheds_ended_sessions_and_long_unused_build_caches(tmp_path):
    """A compile slot grew by one incremental cache per checkout path and by each session's cell
    libraries (3 GB a slot on a developer's machine, copied again into every new slot): taking a
    slot removes the cell libraries and incremental caches unused for PRUNE_DAYS, keeps the
    recent caches and the compiled dependencies."""
    import os
    debug = tmp_path / "slot-0" / "target" / "x86_64-unknown-linux-gnu" / "debug"
    (debug / "deps").mkdir(parents=True)
    (debug / "deps" / "libtch-1.rlib").write_bytes(b"x" * 10)
    (debug / "libcode_3.so").write_bytes(b"x" * 100)
    old, new = debug / "incremental" / "fastdet-old", debug / "incremental" / "fastdet-new"
    for d in (old, new):
        (d / "s-1").mkdir(parents=True)
        (d / "s-1" / "dep-graph.bin").write_bytes(b"x" * 1000)
    now = time.time()
    long_ago = now - (launcher.PRUNE_DAYS + 1) * 86400
    os.utime(old, (long_ago, long_ago))
    assert launcher.prune(tmp_path / "slot-0", now=now) == 1100
    assert not old.exists() and not (debug / "libcode_3.so").exists()
    assert new.exists() and (debug / "deps" / "libtch-1.rlib").exists()
