"""One window -> one prediction, without ROS: the classifier (checkpoint + front end + network),
the live session (the live path's one caller of the network),
the prediction schema, scoring against ground truth, latency/rate statistics and the debug
image. No ROS import anywhere in this package.
"""
