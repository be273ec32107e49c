"""Targeted config edits for ``parity.fuzz_cases.config_targeted``: the wrong-shape classes the issue
names (list class_name, a string as a layer, malformed keras_history / inbound_nodes, unknown input
or output names, empty output_layers, object/structured/string dtypes, huge declared sizes,
duplicate names, cycles, reverse order, a config that is a list). Each edits a parsed config in place."""


def _layers(cfg):
    return cfg["config"]["layers"]


def targeted(rng):
    """One edit per failure class the issue names, each picking its target with ``rng``."""
    def class_list(cfg):
        rng.choice(_layers(cfg))["class_name"] = ["Dense"]
        return cfg

    def string_layer(cfg):
        _layers(cfg)[rng.randrange(len(_layers(cfg)))] = "Dense"
        return cfg

    def bad_history(cfg):
        for lc in _layers(cfg):
            for node in lc.get("inbound_nodes", []):
                if isinstance(node, dict) and node.get("args"):
                    node["args"][0]["config"]["keras_history"] = rng.choice((["x"], [1, 2, 3], "x", None, ["x", -1, 0]))
                    return cfg
                if isinstance(node, list) and node:
                    node[0] = rng.choice((["x"], [1, 2, 3], "x", None, ["x", "0", 0]))
                    return cfg
        return cfg

    def bad_nodes(cfg):
        rng.choice(_layers(cfg))["inbound_nodes"] = rng.choice(("x", {"a": 1}, [3], [[]], [{"args": 5}]))
        return cfg

    def unknown_io(cfg):
        key = rng.choice(("input_layers", "output_layers"))
        if key in cfg["config"]:
            cfg["config"][key] = [["nope", 0, 0]]
        return cfg

    def empty_outputs(cfg):
        cfg["config"]["output_layers"] = []
        return cfg

    def bad_dtype(cfg):
        rng.choice(_layers(cfg))["config"]["dtype"] = rng.choice(("object", "string", "str", "<U3", [["a", "<f4"]],
                                                                  "complex64", {"config": {"name": "object"}}))
        return cfg

    def huge_size(cfg):
        lc = rng.choice(_layers(cfg))
        key = rng.choice(("units", "filters", "input_dim", "output_dim", "batch_shape", "batch_input_shape"))
        lc["config"][key] = [None, 10 ** rng.randint(5, 12)] if "shape" in key else 10 ** rng.randint(5, 12)
        return cfg

    def duplicate_names(cfg):
        names = [lc.get("name") for lc in _layers(cfg)]
        if len(names) > 2:
            _layers(cfg)[-1]["name"] = names[1]
            _layers(cfg)[-1]["config"]["name"] = names[1]
        return cfg

    def cycle(cfg):
        ls = _layers(cfg)
        first = next((lc for lc in ls if lc.get("inbound_nodes")), None)
        if first is not None:
            node = first["inbound_nodes"][0]
            last = ls[-1].get("name", "x")
            if isinstance(node, list):
                node[0][0] = last
            elif node.get("args"):
                node["args"][0]["config"]["keras_history"][0] = last
        return cfg

    def reversed_order(cfg):
        cfg["config"]["layers"].reverse()
        return cfg

    def config_as_list(cfg):
        cfg["config"] = rng.choice((_layers(cfg), [], 3, "x"))
        return cfg

    return [class_list, string_layer, bad_history, bad_nodes, unknown_io, empty_outputs, bad_dtype, huge_size,
            duplicate_names, cycle, reversed_order, config_as_list]
