"""The ingest worker's settings come from the environment, with checked values."""

import os
import tempfile

import pytest

from rapport_profile.config import IngestSettings

pytestmark = pytest.mark.unit


def test_topics_group_and_batching_come_from_the_environment():
    settings = IngestSettings.from_env(
        {
            "RAPPORT_INTERACTIONS_TOPIC": "t.in",
            "RAPPORT_DEAD_LETTER_TOPIC": "t.dlq",
            "RAPPORT_PROFILE_GROUP": "g1",
            "RAPPORT_PROFILE_BATCH_SIZE": "250",
            "RAPPORT_PROFILE_LINGER": "0.2",
            "RAPPORT_PROFILE_WORKER_PORT": "7001",
        }
    )
    assert settings.kafka.interactions_topic == "t.in" and settings.kafka.dead_letter_topic == "t.dlq"
    assert (settings.group, settings.batch_size, settings.linger, settings.web_port) == ("g1", 250, 0.2, 7001)


def test_defaults_without_environment():
    settings = IngestSettings.from_env({})
    assert settings.group == "rapport-profile" and settings.batch_size == 1000 and settings.web_host == "127.0.0.1"


def test_faust_folder_stays_out_of_the_working_directory(tmp_path):
    assert IngestSettings.from_env({"RAPPORT_PROFILE_DATA_DIR": str(tmp_path)}).faust_data_dir == str(tmp_path)
    default = IngestSettings.from_env({"RAPPORT_PROFILE_GROUP": "g2"}).faust_data_dir
    assert os.path.isabs(default) and default.endswith("rapport-faust-g2")
    assert not default.startswith(os.getcwd() + os.sep) or os.getcwd().startswith(tempfile.gettempdir())


@pytest.mark.parametrize(("name", "value"), [("RAPPORT_PROFILE_BATCH_SIZE", "0"), ("RAPPORT_PROFILE_LINGER", "soon")])
def test_bad_values_name_the_variable(name: str, value: str):
    with pytest.raises(ValueError, match=name):
        IngestSettings.from_env({name: value})
