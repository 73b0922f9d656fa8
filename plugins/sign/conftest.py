# pytest's root for this plugin: it puts this directory on sys.path, so the tests import `sign`.
