from controller.api.migration_policy import MigrationPolicy, select_policy


def policy(name: str, ns: dict[str, str] | None = None, own: dict[str, str] | None = None) -> MigrationPolicy:
    return MigrationPolicy.parse(
        {
            "metadata": {"name": name},
            "spec": {"selectors": {"namespaceSelector": ns or {}, "migrationSelector": own or {}}},
        }
    )


def test_the_policy_matching_the_most_labels_wins() -> None:
    catch_all = policy("a-all")
    prod = policy("prod", ns={"env": "prod"})
    prod_db = policy("prod-db", ns={"env": "prod"}, own={"tier": "db"})
    every = [catch_all, prod, prod_db]
    assert select_policy(every, {"env": "prod"}, {"tier": "db"}) is prod_db
    assert select_policy(every, {"env": "prod"}, {"tier": "web"}) is prod
    assert select_policy(every, {"env": "dev"}, {"tier": "db"}) is catch_all
    assert select_policy([prod, prod_db], {"env": "dev"}, {}) is None


def test_ties_go_to_the_first_name() -> None:
    assert select_policy([policy("b"), policy("a")], {}, {}).metadata.name == "a"  # type: ignore[union-attr]
