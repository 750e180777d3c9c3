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
