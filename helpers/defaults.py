"""Every default the project has, in one place: the command line, the parameter dataclasses and
the notebooks' parameters cells read them from here (a test checks the notebooks agree).

Plain values only, so that importing this module costs nothing (no Spark, no TensorFlow).
"""

from __future__ import annotations

#: CNN backbone (a key of :data:`helpers.core.backbones.BACKBONES`) and its weights.
MODEL_NAME = "mobilenet_v2"
WEIGHTS = "imagenet"
#: Side of the square images fed to the backbone. 224 is the published recipe; MobileNetV2
#: also runs at 96, 128, 160 and 192 with the same weights, several times faster on
#: Fruits-360's 100x100 photos (README, "Speed and sizes").
INPUT_SIZE = 224
#: Inference runtime of the backbone, and its precision ("bf16" needs OpenVINO; on a CPU
#: without BF16 instructions it falls back to fp32, saying why).
RUNTIME = "tensorflow"
RUNTIMES = ("tensorflow", "openvino")
PRECISION = "fp32"
PRECISIONS = ("fp32", "bf16")
#: Images per model call inside a Spark worker.
BATCH_SIZE = 64
#: PCA keeps the smallest k whose explained variance reaches this share.
VARIANCE_THRESHOLD = 0.95
#: Share of images set apart for testing when the input has no Training/Test folders.
TEST_FRACTION = 0.25
#: Seed of every random choice (sampling, splits, classifier, clusters, t-SNE): reruns repeat.
SEED = 360
#: Heads of the recognizer: logistic regression on the PCA components, an MLP on them, and a
#: logistic regression on the full 1280-d features. "auto" fits each and keeps the one with
#: the best cluttered top-1 on validation photos.
HEADS = ("logistic_regression", "mlp", "logistic_regression_full")
CLASSIFIER = "auto"
CLASSIFIERS = ("auto", *HEADS)
#: Share of the training photos kept apart to choose the head and the "not sure" threshold.
VALIDATION_FRACTION = 0.2
#: Recognizer training: cluttered copies of each training photo (fruit cut from its white
#: background, pasted on other backgrounds; 0: none), copies of each test photo in the
#: cluttered evaluation, and pictures with no fruit for the "not sure" threshold.
AUGMENT_COPIES = 3
CLUTTERED_TEST_COPIES = 3
UNKNOWN_PHOTOS = 100
#: Logistic regression: L2 strength and iterations; MLP: hidden layer sizes.
REG_PARAM = 0.01
MAX_ITER = 200
#: Convergence tolerance of the heads' optimizer (L-BFGS, relative change of the loss). On the
#: sample, 1e-4 stops logistic regression well before MAX_ITER with the same accuracy; each
#: iteration is a Spark job, so iterations are most of a small run's fitting time.
TOL = 1e-4
HIDDEN_LAYERS = (256,)
#: Labels per photo answered by ``predict``.
TOP_LABELS = 3
#: Points drawn on the 2-D maps (stratified sample).
MAP_POINTS = 1000
#: AWS region of new buckets and clusters: Paris, an EU region, as the data stays in the EU.
REGION = "eu-west-3"
#: Parallel S3 transfers of the ``s3`` commands.
S3_WORKERS = 8
#: Spark application name of sessions the project builds.
APP_NAME = "fruits-pipeline"
