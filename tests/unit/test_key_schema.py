"""Every Redis key name comes from storage/keys.py: the Lua scripts only call the key_*
functions generated from its TEMPLATES, and the Python helpers fill the same templates."""

from __future__ import annotations

import re
from importlib.resources import files

from jobcord.storage import keys

#: A key spelled inside a script: a quoted literal that starts with ':' or ends with ':' (a
#: namespace part), or a bare namespace concatenation.
_SPELLED = re.compile(r"""(ns|dq)\s*\.\.|'[^']*:'|'\.(p0|p2|msgs)'""")


def test_no_script_spells_a_key_name():
    lua = files("jobcord.storage") / "lua"
    offenders = {}
    for script in sorted(p for p in lua.iterdir() if p.name.endswith(".lua")):
        code = "\n".join(
            line.split("--", 1)[0] for line in script.read_text().splitlines()
        )  # comments may describe keys
        found = _SPELLED.findall(code)
        if found:
            offenders[script.name] = found
    assert not offenders, offenders


def test_python_helpers_and_lua_functions_share_the_templates():
    assert keys.record_key("r1") == "jobcord:req:r1"
    assert keys.idempotency_key("app", "k") == "jobcord:idem:app:k"
    assert keys.queue_key("jobcord.a.cpu", 0) == "jobcord.dq:jobcord.a.cpu.p0"
    assert keys.queue_key("jobcord.a.cpu") == "jobcord.dq:jobcord.a.cpu"
    generated = keys.lua_key_functions()
    for name in keys.TEMPLATES:
        assert f"local function key_{name}(" in generated
    assert "return ns .. ':req:' .. p0 .. ':events' end" in generated
    assert "return dq .. ':' .. p0 .. '.p0' end" in generated


def test_the_cluster_layout_puts_every_key_in_one_slot():
    from redis.crc import key_slot

    keys.use_cluster_layout()
    try:
        names = [
            keys.record_key("r1"),
            keys.idempotency_key("app", "{other}"),
            keys.queue_key("jobcord.a.cpu", 2),
            keys.running_key(),
            keys.cancels_channel(),
            keys.consumer_key("w1"),
        ]
        assert names[0] == "{jobcord}:req:r1" and names[2] == "{jobcord}.dq:jobcord.a.cpu.p2"
        assert {key_slot(n.encode()) for n in names} == {key_slot(keys.HASH_TAG.encode())}
    finally:
        keys.use_cluster_layout(False)
    assert keys.record_key("r1") == "jobcord:req:r1"
