import Backprop
print("backprop")
