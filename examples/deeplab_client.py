"""The classic DeepLab serving client, with today's gRPC API.

Sends one photo to a TF Serving (or mlc-model-server) model with the ``predict_images``
signature, once synchronously and once through ``Predict.future``, and writes the
segmentation map as a Pascal VOC palette PNG.

    python examples/deeplab_client.py photo.jpg --server 127.0.0.1:8500 --model deeplab

It needs only tensorflow (for the TensorProto helpers), tensorflow-serving-api, grpcio,
numpy and pillow; it does not use mlc.
"""

from __future__ import annotations

import argparse

import grpc
import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def voc_palette() -> list[int]:
    """The Pascal VOC colour map as pillow's flat [r, g, b, r, g, b, ...] list."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="a JPEG or PNG photo")
    parser.add_argument("--server", default="127.0.0.1:8500", help="gRPC host:port")
    parser.add_argument("--model", default="deeplab", help="model name on the server")
    parser.add_argument("--label", default=None, help="version label to ask for, e.g. stable")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
    parser.add_argument("--out", default="mask.png", help="where to write the mask PNG")
    args = parser.parse_args()

    photo = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32)
    height, width = photo.shape[:2]

    request = predict_pb2.PredictRequest()
    request.model_spec.name = args.model
    request.model_spec.signature_name = "predict_images"
    if args.label:
        request.model_spec.version_label = args.label
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(photo[np.newaxis], dtype=tf.float32))
    request.inputs["height"].CopyFrom(tf.make_tensor_proto([height], dtype=tf.int32))
    request.inputs["width"].CopyFrom(tf.make_tensor_proto([width], dtype=tf.int32))

    # Segmentation maps of large photos exceed gRPC's 4 MB default message size.
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(args.server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        # A synchronous call: blocks until the answer or the deadline.
        response = stub.Predict(request, timeout=args.timeout)
        mask = tf.make_ndarray(response.outputs["segmentation_map"])[0]
        print(f"sync:   version {response.model_spec.version.value}, mask {mask.shape[1]}x{mask.shape[0]}, "
              f"classes {sorted(set(np.unique(mask).tolist()))}")

        # The same call through a future: send now, do other work, collect later.
        future = stub.Predict.future(request, timeout=args.timeout)
        again = tf.make_ndarray(future.result().outputs["segmentation_map"])[0]
        print(f"future: same mask as sync: {bool(np.array_equal(mask, again))}")

    picture = Image.fromarray(mask.astype(np.uint8), mode="P")
    picture.putpalette(voc_palette())
    picture.save(args.out)
    print(f"mask:   {args.out}")


if __name__ == "__main__":
    main()
