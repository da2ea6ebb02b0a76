"""One window -> one prediction, without ROS: the pipeline (checkpoint + front end + network),
the prediction schema, scoring against ground truth, latency/rate statistics and the debug
image. No ROS import anywhere in this package.
"""
