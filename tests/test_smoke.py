def test_world_builds(world):
    assert world.tenants["A1"].path.startswith(world.tenants["A"].path)
    assert len(world.tokens) == 18
