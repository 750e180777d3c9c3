from __future__ import annotations

from taskq.storage.keys import Keys


def test_two_namespaces_on_one_server_are_isolated(make_app):
    a, b = make_app(namespace="iso_a"), make_app(namespace="iso_b")
    for app in (a, b):
        app.task(name="work")(lambda: None)
    ja = a.tasks["work"].delay()
    assert a.control.job_ids("queued") == [ja.id]
    assert b.control.job_ids("queued") == []
    assert b.job(ja.id).info is not None
    _, jobs = b.backend.settle_claim("wb", 10, [], ["default"], [], (10, 10, 10, 1000))
    assert jobs == []
    assert a.job(ja.id).state.value == "queued"


def test_every_key_carries_the_namespace_hash_tag(app):
    app.task(name="work", unique=True)(lambda x: x)
    app.tasks["work"].apply_async((1,), delay=10)
    app.tasks["work"].delay(2)
    keys = [k.decode() for k in app.backend.client.keys("*" + app.settings.namespace + "*")]
    assert keys and all(k.startswith(Keys(app.settings.namespace).prefix) for k in keys)
    assert Keys("x").job("1") == "{x}:j:1"


def test_a_namespace_with_glob_characters_deletes_only_its_own_keys(make_app, namespace):
    # "<ns>*" as a SCAN pattern would also match "<ns>x": the namespace is matched literally
    glob, other = make_app(namespace=namespace + "*"), make_app(namespace=namespace + "x")
    for app in (glob, other):
        app.task(name="work")(lambda: None)
    theirs = other.tasks["work"].delay()
    glob.tasks["work"].delay()
    assert glob.control.job_ids("waiting") == []  # a scan of job keys: its own only
    glob.backend.delete_namespace()
    assert not list(glob.backend.client.scan_iter(match=Keys(namespace + "*").pattern))
    assert other.job(theirs.id).state.value == "queued"
    assert other.control.job_ids("queued") == [theirs.id]
