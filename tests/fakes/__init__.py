"""Fake crowdsourcing platforms for tests: real HTTP servers on 127.0.0.1.

- `tests.fakes.mturk.FakeMTurk`: the MTurk Requester API (AWS JSON 1.1), built
  from botocore's service model, for an unchanged boto3 client.
- `tests.fakes.prolific.FakeProlific`: the Prolific REST API, built from
  Prolific's API reference, for httpx.
- `tests.fakes.faults`: the fault plan both share (500/503, throttling,
  timeouts and dropped connections before or after a request is applied),
  scripted or drawn from a seed.
- `tests.fakes.fixtures`: the `mturk_fake` / `prolific_fake` pytest fixtures
  and `mturk_client()` / `prolific_client()` helpers.

Usage:

    with FakeMTurk() as fake:                       # port 0, background thread
        client = boto3.client("mturk", region_name="us-east-1", endpoint_url=fake.url,
                              aws_access_key_id="x", aws_secret_access_key="y")
        fake.faults.inject("timeout_after_apply", operation="CreateHITWithHITType")
        fake.faults.randomize(seed=17, rate=0.2)    # replayable from the seed
        ...
        assert not fake.duplicate_hits()

    with FakeProlific() as fake:                    # fake.api_url, fake.token
        ...
        assert not fake.double_payments()

Tests import these modules as `tests.fakes...` (pytest runs with
--import-mode=importlib; the repository root makes `tests` a namespace
package, so no sys.path changes are needed).
"""
