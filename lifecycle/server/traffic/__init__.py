"""mlc-model-server's traffic split and shadow comparison (the server side of ``mlc rollout``).

- ``split``    a model's split (stable, candidate, weight, shadow, what to compare), its JSON
               form, the sticky choice by routing key, the table the admin path and
               ``--mlc_traffic_file`` set;
- ``shadow``   copies of stable's answers run on the candidate off the request path: a bounded
               queue, one worker, drops counted;
- ``compare``  how two answers agree, by the model's task (segmentation, classification, other).

Only requests that name a model and neither a version nor a label (the default route) are
split or shadowed; everything else is answered exactly as TF Serving answers it.
"""
