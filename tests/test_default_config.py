"""fgjax.default_config: the fields a config starts from, and old field names mapped to new."""

from fgjax import default_config
from fgjax import train


def test_renamed_fields_map_to_fields_of_the_base_config():
  fields = train.flatten(default_config.base_config().to_dict())
  assert set(default_config.RENAMED.values()) <= fields.keys()
  assert not set(default_config.RENAMED) & fields.keys()


def test_renamed_moves_old_names_and_keeps_the_others():
  assert default_config.renamed({"local_groups": 32, "local_head_patches": 2, "seed": 1}) == {
      "local_heads.slices": 32, "local_heads.patches": 2, "seed": 1}
