"""Small pure tensor/array operations shared by the model, training, evaluation, export and the studio."""
