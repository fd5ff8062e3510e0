mod junit;
