import kvstore


def test_set_get_count_roundtrip(db):
    db[42] = "apple"
    db["k"] = "apple"
    assert db[42] == "apple"
    assert db.count("apple") == 2
    assert db.count("apple", strategy="group_by") == 2
    assert db.count("apple", strategy="scan") == 2
    del db[42]
    assert db.count("apple") == 1
    assert db.verify() == []


def test_reopen_keeps_data(path):
    with kvstore.open(path) as db:
        db[b"x"] = 1.5
    with kvstore.open(path) as db:
        assert db[b"x"] == 1.5
        assert db.count(1.5) == 1
