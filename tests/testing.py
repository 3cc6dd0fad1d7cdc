"""The base class of our tests: keras-hub's, without TensorFlow's helper
`test_session`, which pytest would otherwise report as a skipped test."""

from keras_hub.src.tests.test_case import TestCase as KerasHubTestCase


class TestCase(KerasHubTestCase):
    test_session = None
