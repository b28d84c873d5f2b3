from tests.fakes.fixtures import mturk_fake, prolific_fake  # noqa: F401  (fixtures)
