import pickle

from medreg.errors import InputError


def test_input_error_survives_a_process_boundary():
    err = pickle.loads(pickle.dumps(InputError("/data/x.nii.gz", "expected 3-D, found 2-D")))
    assert isinstance(err, InputError) and str(err) == "/data/x.nii.gz: expected 3-D, found 2-D"
    assert err.problem == "expected 3-D, found 2-D"
