"""Object roots as users write them (`s3://bucket/prefix`), and where the endpoint, region and
credentials of a store come from: creamery's options, then the standard AWS variables, then
the profile's sections of the shared files, the order the AWS tools use."""

from __future__ import annotations

from pathlib import Path

import pytest

from creamery.core.objects import (
    ObjectRoot,
    S3Options,
    S3Settings,
    is_object_url,
    parse_object_root,
    resolve_s3_settings,
)

# ---------------------------------------------------------------- s3:// roots


@pytest.mark.parametrize(
    ("text", "bucket", "prefix"),
    [
        ("s3://bucket", "bucket", ""),
        ("s3://bucket/", "bucket", ""),
        ("s3://my-bucket.example/some/prefix/", "my-bucket.example", "some/prefix"),
        ("S3://abc/p", "abc", "p"),
        ("s3://a1b/deep/er/still", "a1b", "deep/er/still"),
    ],
)
def test_object_roots_parse(text: str, bucket: str, prefix: str) -> None:
    root = parse_object_root(text)
    assert root == ObjectRoot(bucket, prefix)
    assert is_object_url(text)


@pytest.mark.parametrize(
    "text",
    [
        "/srv/packages",
        "http://bucket/x",
        "s3://",
        "s3://ab",  # too short
        "s3://Bucket",  # upper case
        "s3://-bucket",
        "s3://bucket-",
        "s3://buck..et",
        "s3://" + "b" * 64,
        "s3://bucket/a//x",
        "s3://bucket/a/../b",
        "s3://bucket/./x",
        "s3://bucket/.creamery",
        "s3://bucket/a/.hidden/b",
        "s3://bucket/a\\b",
    ],
)
def test_bad_object_roots_say_why(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_object_root(text)


def test_root_keys_state_and_below() -> None:
    root = ObjectRoot("bucket", "team/pkgs")
    assert root.url == str(root) == "s3://bucket/team/pkgs"
    assert root.key("a/b.whl") == "team/pkgs/a/b.whl"
    assert root.state() == ObjectRoot("bucket", "team/pkgs/.creamery")
    assert root.below("/cache/") == ObjectRoot("bucket", "team/pkgs/cache")
    whole = ObjectRoot("bucket")
    assert (whole.url, whole.key("x"), whole.state().prefix) == ("s3://bucket", "x", ".creamery")
    assert not is_object_url(None) and not is_object_url(Path("s3://x"))


# ---------------------------------------------------------------- endpoint, region, credentials


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """An environment whose shared files are in tmp_path (never the real ~/.aws)."""
    credentials = write(
        tmp_path / "credentials",
        "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = defaultsecret\n"
        "[ci]\naws_access_key_id = CIKEY\naws_secret_access_key = cisecret\n"
        "aws_session_token = citoken\n",
    )
    config = write(
        tmp_path / "config",
        "[default]\nregion = eu-west-1\n"
        "[profile ci]\nregion = eu-central-1\nendpoint_url = http://minio.internal:9000\n"
        "[profile nested]\nregion = auto\ns3 =\n  endpoint_url = https://acct.r2.example\n"
        "  addressing_style = path\n"
        "[profile keys-in-config]\naws_access_key_id = CFGKEY\n"
        "aws_secret_access_key = cfgsecret\n",
    )
    return {
        "HOME": str(tmp_path / "home"),
        "AWS_SHARED_CREDENTIALS_FILE": credentials,
        "AWS_CONFIG_FILE": config,
    }


def test_nothing_said_is_nothing_resolved(tmp_path: Path) -> None:
    settings = resolve_s3_settings(S3Options(), {"HOME": str(tmp_path)})
    assert settings == S3Settings()
    assert not settings.path_style and not settings.allow_http


def test_the_default_profile_of_the_shared_files(files: dict[str, str]) -> None:
    settings = resolve_s3_settings(S3Options(), files)
    assert (settings.access_key_id, settings.secret_access_key) == ("DEFAULTKEY", "defaultsecret")
    assert settings.region == "eu-west-1"
    assert settings.endpoint_url is None and settings.session_token is None
    assert not settings.path_style, "AWS itself: virtual-hosted addressing"


def test_the_files_default_to_dot_aws_in_home(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    write(
        tmp_path / ".aws" / "credentials",
        "[default]\naws_access_key_id=K\naws_secret_access_key=S\n",
    )
    write(tmp_path / ".aws" / "config", "[default]\nregion=ap-south-1\nendpoint_url=http://h:1/\n")
    settings = resolve_s3_settings(S3Options(), {"HOME": str(tmp_path)})
    assert (settings.access_key_id, settings.region) == ("K", "ap-south-1")
    assert settings.endpoint_url == "http://h:1"
    assert settings.path_style and settings.allow_http


def test_aws_profile_picks_a_profile_section(files: dict[str, str]) -> None:
    settings = resolve_s3_settings(S3Options(), {**files, "AWS_PROFILE": "ci"})
    assert (settings.access_key_id, settings.session_token) == ("CIKEY", "citoken")
    assert settings.region == "eu-central-1"
    assert settings.endpoint_url == "http://minio.internal:9000"
    assert settings.path_style and settings.allow_http
    assert settings.profile == "ci"


def test_the_variables_win_over_the_files(files: dict[str, str]) -> None:
    environ = {
        **files,
        "AWS_PROFILE": "ci",
        "AWS_ACCESS_KEY_ID": "ENVKEY",
        "AWS_SECRET_ACCESS_KEY": "envsecret",
        "AWS_SESSION_TOKEN": "envtoken",
        "AWS_REGION": "us-west-2",
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_ENDPOINT_URL": "https://generic.example",
    }
    settings = resolve_s3_settings(S3Options(), environ)
    assert (settings.access_key_id, settings.secret_access_key) == ("ENVKEY", "envsecret")
    assert settings.session_token == "envtoken"
    assert settings.region == "us-west-2", "AWS_REGION before AWS_DEFAULT_REGION"
    assert settings.endpoint_url == "https://generic.example"
    assert not settings.allow_http
    environ["AWS_ENDPOINT_URL_S3"] = "http://s3-only.example:9000"
    del environ["AWS_REGION"]
    settings = resolve_s3_settings(S3Options(), environ)
    assert settings.endpoint_url == "http://s3-only.example:9000", "the service's own first"
    assert settings.region == "us-east-2"


def test_the_options_win_over_everything(files: dict[str, str]) -> None:
    environ = {**files, "AWS_ENDPOINT_URL": "https://env.example", "AWS_REGION": "us-west-2"}
    environ |= {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "envsecret"}
    options = S3Options(endpoint_url="http://127.0.0.1:9000/", region="auto", profile="ci")
    settings = resolve_s3_settings(options, environ)
    assert settings.endpoint_url == "http://127.0.0.1:9000"
    assert settings.region == "auto"
    # an explicit profile is a choice of credentials, as `aws --profile` is
    assert (settings.access_key_id, settings.session_token) == ("CIKEY", "citoken")


def test_a_nested_s3_block_and_keys_in_the_config_file(files: dict[str, str]) -> None:
    nested = resolve_s3_settings(S3Options(profile="nested"), files)
    assert nested.endpoint_url == "https://acct.r2.example"
    assert nested.region == "auto"
    assert nested.access_key_id is None, "no keys for this profile: the platform's chain"
    in_config = resolve_s3_settings(S3Options(profile="keys-in-config"), files)
    assert (in_config.access_key_id, in_config.secret_access_key) == ("CFGKEY", "cfgsecret")


def test_half_a_key_pair_is_no_key(files: dict[str, str]) -> None:
    environ = {**files, "AWS_ACCESS_KEY_ID": "ENVKEY"}  # no secret: the files' pair
    assert resolve_s3_settings(S3Options(), environ).access_key_id == "DEFAULTKEY"


def test_unreadable_or_broken_files_are_no_files(tmp_path: Path) -> None:
    environ = {
        "HOME": str(tmp_path),
        "AWS_SHARED_CREDENTIALS_FILE": write(tmp_path / "broken", "not an ini [file\n= x"),
        "AWS_CONFIG_FILE": str(tmp_path / "missing"),
    }
    assert resolve_s3_settings(S3Options(), environ) == S3Settings()


def test_secrets_never_show_in_a_repr(files: dict[str, str]) -> None:
    settings = resolve_s3_settings(S3Options(profile="ci"), files)
    assert "cisecret" not in repr(settings) and "citoken" not in repr(settings)
    assert "CIKEY" in repr(settings)
